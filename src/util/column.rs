//! The one typed accessor for Arrow columns: cast to the wanted type (integers widen to
//! f64, numbers print to strings...) and view through arrow's [`AsArray`], so that a type
//! mismatch becomes one error naming the column, never a failed `downcast_ref`.

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};

/// `array` cast to f64 (nulls kept); `what` names the column in the error.
pub(crate) fn f64s(array: &dyn Array, what: &str) -> Result<Float64Array> {
    let c = arrow::compute::cast(array, &DataType::Float64)
        .with_context(|| format!("{what} is not numeric"))?;
    Ok(c.as_primitive::<Float64Type>().clone())
}

/// `array` cast to i64 (nulls kept); `what` names the column in the error.
pub(crate) fn i64s(array: &dyn Array, what: &str) -> Result<Int64Array> {
    let c = arrow::compute::cast(array, &DataType::Int64)
        .with_context(|| format!("{what} is not an integer column"))?;
    Ok(c.as_primitive::<Int64Type>().clone())
}

/// `array` cast to UTF-8 strings (nulls kept); `what` names the column in the error.
pub(crate) fn strings(array: &dyn Array, what: &str) -> Result<StringArray> {
    let c = arrow::compute::cast(array, &DataType::Utf8)
        .with_context(|| format!("{what} is not a string column"))?;
    Ok(c.as_string::<i32>().clone())
}

/// The values of an f64 column with nulls as NaN.
pub(crate) fn nan_for_null(c: &Float64Array) -> impl Iterator<Item = f64> + '_ {
    c.iter().map(|v| v.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, ListArray};

    #[test]
    fn casts_keep_nulls_and_mismatches_name_the_column() {
        let a = Int32Array::from(vec![Some(3), None]);
        let f = f64s(&a, "x").unwrap();
        assert_eq!(f.value(0), 3.0);
        assert!(f.is_null(1));
        assert!(nan_for_null(&f).last().unwrap().is_nan());
        assert_eq!(i64s(&a, "x").unwrap().value(0), 3);
        assert_eq!(strings(&a, "x").unwrap().value(0), "3");
        let l = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1)])]);
        let e = f64s(&l, "file.parquet: column 'teff'").unwrap_err();
        assert!(
            e.to_string().contains("column 'teff' is not numeric"),
            "{e}"
        );
    }
}
