//! `dealias device list` and `dealias device render NAME IN.wav OUT.wav`: the alias-free
//! reference circuits of [`crate::device`].

use std::path::PathBuf;

use anyhow::bail;

/// Arguments of `dealias device`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DeviceCommand,
}

/// The subcommands of `dealias device`.
#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// List the devices, one a line.
    List,
    /// Run a device over a mono WAV file (from rest, at the file's rate; 32-bit float out).
    Render(RenderArgs),
}

/// Arguments of `dealias device render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The device (see `dealias device list`).
    pub name: String,
    /// Input WAV (16/24/32-bit int or 32/64-bit float).
    pub input: PathBuf,
    /// Output WAV (32-bit float, same length and rate as the input).
    pub output: PathBuf,
    /// Channel of a multichannel input to use (0 = left).
    #[arg(long, value_name = "N")]
    pub channel: Option<usize>,
}

/// Runs `dealias device`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        DeviceCommand::List => {
            for d in crate::device::devices() {
                println!("{:<16} {}", d.name, d.description);
            }
            Ok(())
        }
        DeviceCommand::Render(a) => render(a),
    }
}

fn render(args: RenderArgs) -> anyhow::Result<()> {
    let device = crate::device::Device::by_name(&args.name)?;
    let _locks = crate::io::Outputs::new()
        .input(&args.input, "IN.wav")
        .output(&args.output, "OUT.wav")
        .claim()?;
    let audio = crate::audio::read_mono(&args.input, args.channel)?;
    if let Some(w) = audio.clipping_warning() {
        eprintln!("warning: {}: {w}", args.input.display());
    }
    if audio.samples.is_empty() {
        bail!("{}: the file holds no samples", args.input.display());
    }
    let y = device.render(&audio.samples, f64::from(audio.sample_rate))?;
    let out: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    crate::audio::write_f32(&args.output, &out, audio.sample_rate)?;
    Ok(())
}
