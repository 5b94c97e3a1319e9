//! Small helpers for reading model settings and weights out of a parsed JSON document with
//! error messages that say which key is wrong and why, and for writing weights back.
//!
//! Hand-written rather than derived with serde because every file variant carries extra keys
//! that must be kept verbatim, and because each message has to name the offending setting.

use serde_json::{Map, Number, Value};

/// Largest size setting (channels, hidden size, kernel size, layer count) accepted from a
/// file. Real models use tens of channels; the cap keeps a corrupt file from asking for an
/// enormous allocation before any weight count is checked.
pub const MAX_SIZE: usize = 1 << 16;
/// Largest dilation accepted (the standard NAM WaveNet uses 512).
pub const MAX_DILATION: usize = 1 << 20;
/// Largest number of weights a model file may hold (a few million are the real maximum).
pub const MAX_WEIGHTS: usize = 1 << 28;

/// The object at `v`, or an error naming `what`.
pub fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} must be a JSON object, found {}", type_name(v)))
}

/// The value under `key`, or an error naming it.
pub fn field<'a>(obj: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a Value, String> {
    obj.get(key)
        .ok_or_else(|| format!("{what} has no \"{key}\""))
}

/// A JSON type's name for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A size setting: a non-negative integer in `min..=max`.
pub fn size(v: &Value, what: &str, min: usize, max: usize) -> Result<usize, String> {
    let n = match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| {
                // Accept integral floats such as `16.0` (some exporters write them).
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| format!("{what} must be a non-negative integer, found {n}"))?,
        other => {
            return Err(format!(
                "{what} must be a non-negative integer, found {}",
                type_name(other)
            ))
        }
    };
    if n < min as u64 || n > max as u64 {
        return Err(format!(
            "{what} is {n}, outside the supported range {min}..={max}"
        ));
    }
    Ok(n as usize)
}

/// A boolean setting; integers 0/1 are accepted too (GuitarML writes `"skip": 1`).
pub fn boolean(v: &Value, what: &str) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        other => Err(format!("{what} must be true or false, found {other}")),
    }
}

/// A finite number.
pub fn number(v: &Value, what: &str) -> Result<f64, String> {
    match v.as_f64() {
        Some(x) if x.is_finite() => Ok(x),
        Some(x) => Err(format!("{what} is not finite ({x})")),
        None => Err(format!("{what} must be a number, found {}", type_name(v))),
    }
}

/// A flat array of finite numbers (weights).
pub fn numbers(v: &Value, what: &str) -> Result<Vec<f64>, String> {
    let a = v
        .as_array()
        .ok_or_else(|| format!("{what} must be an array of numbers, found {}", type_name(v)))?;
    if a.len() > MAX_WEIGHTS {
        return Err(format!(
            "{what} has {} values, more than the supported {MAX_WEIGHTS}",
            a.len()
        ));
    }
    a.iter()
        .enumerate()
        .map(|(i, x)| number(x, &format!("{what}[{i}]")))
        .collect()
}

/// Flattens a nested array (a tensor) of finite numbers in row-major order and returns the
/// values and the shape. Ragged arrays are an error.
pub fn tensor(v: &Value, what: &str) -> Result<(Vec<f64>, Vec<usize>), String> {
    fn shape_of(v: &Value) -> Vec<usize> {
        let mut shape = Vec::new();
        let mut cur = v;
        while let Value::Array(a) = cur {
            shape.push(a.len());
            match a.first() {
                Some(x) => cur = x,
                None => break,
            }
        }
        shape
    }
    fn walk(
        v: &Value,
        shape: &[usize],
        what: &str,
        out: &mut Vec<f64>,
        index: &mut Vec<usize>,
    ) -> Result<(), String> {
        match (v, shape.split_first()) {
            (Value::Array(a), Some((&n, rest))) => {
                if a.len() != n {
                    return Err(format!(
                        "{what}{index:?} has {} entries, expected {n} (ragged tensor)",
                        a.len()
                    ));
                }
                for (i, x) in a.iter().enumerate() {
                    index.push(i);
                    walk(x, rest, what, out, index)?;
                    index.pop();
                }
                Ok(())
            }
            (x, None) => {
                out.push(number(x, &format!("{what}{index:?}"))?);
                Ok(())
            }
            (x, Some(_)) => Err(format!(
                "{what}{index:?} must be an array, found {}",
                type_name(x)
            )),
        }
    }
    let shape = shape_of(v);
    if shape.is_empty() {
        return Err(format!("{what} must be an array, found {}", type_name(v)));
    }
    let total = shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .filter(|&n| n <= MAX_WEIGHTS)
        .ok_or_else(|| format!("{what} is too large"))?;
    let mut out = Vec::with_capacity(total);
    walk(v, &shape, what, &mut out, &mut Vec::new())?;
    Ok((out, shape))
}

/// The JSON number a PyTorch export writes for weight `x`: `x` rounded to f32, written as the
/// shortest decimal that reads back as that f32's exact f64 value.
pub fn weight_value(x: f64) -> Value {
    let v = x as f32 as f64;
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Replaces the leaves of a (nested) array in row-major order: leaf `i` becomes
/// [`weight_value`]`(new[i])` where `new[i]` differs bitwise from `old[i]`, and is kept as
/// written otherwise. `at` advances over the leaves.
pub fn replace_leaves(v: &mut Value, new: &[f64], old: &[f64], at: &mut usize) {
    match v {
        Value::Array(a) => {
            for x in a {
                replace_leaves(x, new, old, at);
            }
        }
        leaf => {
            let i = *at;
            if new[i].to_bits() != old[i].to_bits() {
                *leaf = weight_value(new[i]);
            }
            *at += 1;
        }
    }
}

/// A sample rate as the exporters write it: an integer when it is one.
pub fn rate_value(rate: f64) -> Result<Value, String> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!("the sample rate {rate} is not a positive number"));
    }
    if rate.fract() == 0.0 && rate < u32::MAX as f64 {
        Ok(Value::from(rate as u64))
    } else {
        serde_json::Number::from_f64(rate)
            .map(Value::Number)
            .ok_or_else(|| format!("the sample rate {rate} is not a number"))
    }
}
