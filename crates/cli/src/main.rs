mod colormap;
mod colormap_data;
mod output;

fn main() {}
