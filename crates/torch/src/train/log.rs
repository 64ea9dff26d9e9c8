//! What a run writes as it goes: one CSV line per step, and a JSON file with the whole
//! history and every validation (rewritten atomically at each checkpoint).

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use anydepth_model::train::{StepRecord, TrainOutputs, Validation};

use crate::error::{Error, Result};

/// The JSON log's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct History {
    steps: Vec<StepRecord>,
    validations: Vec<Validation>,
}

/// The step log (CSV, appended) and history (JSON) of a run.
#[derive(Debug)]
pub struct TrainLog {
    csv: PathBuf,
    json: PathBuf,
    history: History,
    csv_started: bool,
}

impl TrainLog {
    /// The logs of a run writing `outputs`; nothing is written until the first step.
    pub fn new(outputs: &TrainOutputs) -> Self {
        Self {
            csv: outputs.log_csv.clone(),
            json: outputs.log_json.clone(),
            history: History::default(),
            csv_started: false,
        }
    }

    /// Continues the logs of a run resumed after `step`: the history up to it is read
    /// back; later lines (from steps after that checkpoint) are dropped.
    ///
    /// # Errors
    /// When a log exists but cannot be read.
    pub fn resume(&mut self, step: usize) -> Result<()> {
        if let Ok(text) = std::fs::read_to_string(&self.json) {
            let mut history: History = serde_json::from_str(&text)
                .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", self.json.display())))?;
            history.steps.retain(|r| r.step <= step);
            history.validations.retain(|v| v.step <= step);
            self.history = history;
        }
        self.rewrite_csv()
    }

    /// The best validation so far (lowest value).
    pub fn best(&self) -> Option<&Validation> {
        self.history
            .validations
            .iter()
            .min_by(|a, b| a.value.total_cmp(&b.value))
    }

    /// Records a step and appends its CSV line.
    ///
    /// # Errors
    /// When the CSV cannot be written.
    pub fn push(&mut self, record: StepRecord) -> Result<()> {
        if !self.csv_started {
            self.rewrite_csv()?;
        }
        self.history.steps.push(record);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.csv)
            .map_err(|e| self.csv_error(&e))?;
        writeln!(file, "{}", csv_line(&record)).map_err(|e| self.csv_error(&e))
    }

    /// Records a validation.
    pub fn validation(&mut self, validation: Validation) {
        self.history.validations.push(validation);
    }

    /// Rewrites the JSON history atomically.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn write_json(&self) -> Result<()> {
        let text = serde_json::to_vec_pretty(&self.history)
            .map_err(|e| Error::Invalid(format!("cannot encode the training log: {e}")))?;
        anydepth_core::fs::write_atomically(&self.json, true, |out| out.write_all(&text))?;
        Ok(())
    }

    fn rewrite_csv(&mut self) -> Result<()> {
        let mut text = String::from("step,loss,lr,images_per_second\n");
        for record in &self.history.steps {
            text.push_str(&csv_line(record));
            text.push('\n');
        }
        anydepth_core::fs::write_atomically(&self.csv, true, |out| out.write_all(text.as_bytes()))?;
        self.csv_started = true;
        Ok(())
    }

    fn csv_error(&self, e: &std::io::Error) -> Error {
        Error::Invalid(format!("cannot write {}: {e}", self.csv.display()))
    }
}

fn csv_line(r: &StepRecord) -> String {
    format!("{},{},{},{:.3}", r.step, r.loss, r.lr, r.images_per_second)
}
