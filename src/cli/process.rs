//! `dealias process MODEL IN.wav OUT.wav`: run a model over a mono WAV file, from the zero
//! state the plugins start from, writing 32-bit float.

use std::path::PathBuf;

use anyhow::bail;

/// Arithmetic precision of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    F64,
    F32,
}

/// Arguments of `dealias process`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model file (.nam, GuitarML or AIDA-X .json).
    pub model: PathBuf,
    /// Input WAV (16/24/32-bit int or 32/64-bit float).
    pub input: PathBuf,
    /// Output WAV (32-bit float, same length as the input).
    pub output: PathBuf,
    /// Arithmetic precision.
    #[arg(long, value_enum, default_value = "f64")]
    pub precision: Precision,
    /// Channel of a multichannel input to use (0 = left).
    #[arg(long, value_name = "N")]
    pub channel: Option<usize>,
    #[command(flatten)]
    pub knobs: super::KnobArgs,
    #[command(flatten)]
    pub slim: super::SlimArgs,
}

/// Runs `dealias process`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let _locks = crate::io::Outputs::new()
        .input(&args.model, "MODEL")
        .input(&args.input, "IN.wav")
        .output(&args.output, "OUT.wav")
        .claim()?;
    let mut model = crate::load_model(&args.model)?;
    for n in &model.notices {
        super::notice(n);
    }
    if let Some(i) = super::chosen_submodel(&model, &args.slim, &args.model)? {
        model = model.select_submodel(i)?;
    }
    if model.is_container() {
        super::notice(&format!(
            "running submodel {} of {} (max_value {})",
            model.active,
            model.submodels.len(),
            model.submodels[model.active].max_value
        ));
    }
    super::apply_knobs(&mut model, &args.knobs.knobs, &args.model)?;
    let audio = crate::audio::read_mono(&args.input, args.channel)?;
    if let Some(w) = audio.clipping_warning() {
        eprintln!("warning: {}: {w}", args.input.display());
    }
    if audio.samples.is_empty() {
        bail!("{}: the file holds no samples", args.input.display());
    }
    let rate = audio.sample_rate as f64;
    match model.sample_rate {
        Some(sr) if sr != rate => bail!(
            "the model was trained at {sr} Hz but {} is at {rate} Hz; resample the input to {sr} Hz \
             (dealias does not resample silently)",
            args.input.display()
        ),
        Some(_) => {}
        None => super::notice(&format!(
            "the model states no sample rate; running it at the input's {rate} Hz"
        )),
    }
    let out: Vec<f32> = match args.precision {
        Precision::F64 => model
            .process::<f64>(&audio.samples)
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        Precision::F32 => {
            let x: Vec<f32> = audio.samples.iter().map(|&v| v as f32).collect();
            model.process::<f32>(&x)
        }
    };
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        bail!("the model's output is not finite at sample {i}");
    }
    crate::audio::write_f32(&args.output, &out, audio.sample_rate)?;
    Ok(())
}
