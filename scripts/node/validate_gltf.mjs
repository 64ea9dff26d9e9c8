// Validates glTF files with the Khronos glTF-Validator and prints one JSON report per
// file: {"path", "errors", "warnings", "infos", "hints", "messages"}. Exits 1 when a
// file has errors or warnings, 2 on a usage or read failure.
//
// Usage: node scripts/node/validate_gltf.mjs FILE.glb [FILE.glb ...]
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error("usage: validate_gltf.mjs FILE.glb [FILE.glb ...]");
  process.exit(2);
}
let failed = false;
for (const path of paths) {
  let bytes;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (e) {
    console.error(`cannot read ${path}: ${e.message}`);
    process.exit(2);
  }
  const report = await validator.validateBytes(bytes, { uri: path, maxIssues: 50 });
  const issues = report.issues;
  console.log(JSON.stringify({
    path,
    errors: issues.numErrors,
    warnings: issues.numWarnings,
    infos: issues.numInfos,
    hints: issues.numHints,
    messages: issues.messages.map((m) => `${m.severity} ${m.code} ${m.pointer ?? ""}: ${m.message}`),
  }));
  failed ||= issues.numErrors > 0 || issues.numWarnings > 0;
}
process.exit(failed ? 1 : 0);
