//! Writing rows of one resource type to a Parquet file (in memory), with arrow-rs.
//!
//! One row group per file (a file holds one stream batch: at most a few hundred rows), Snappy
//! compression, dictionary encoding and column statistics left at the library's defaults (so
//! Athena can skip row groups by `last_updated` or `id`). The file's key-value metadata carries
//! the Arrow schema (arrow-rs's default) and the `fhirlake.projection.*` keys of
//! [`ProjectionSchema`].

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::row::ProjectionRow;
use crate::schema::{list_item, ProjectionSchema, UTC};
use crate::ProjectionError;

/// The `created_by` written into every file.
const CREATED_BY: &str = concat!("fhirlake-projection ", env!("CARGO_PKG_VERSION"));

/// Encodes `rows` (all of `schema`'s resource type) as one Parquet file.
///
/// Errors: `Encode` when a row does not fit the schema (a bug: rows come from
/// [`project_version`](crate::project_version) with the same schema) or arrow-rs fails.
pub fn encode_parquet(schema: &ProjectionSchema, rows: &[ProjectionRow]) -> Result<Bytes, ProjectionError> {
    let n = rows.len();
    let mut id = StringBuilder::with_capacity(n, n * 36);
    let mut version = Int64Builder::with_capacity(n);
    let mut last_updated = TimestampMicrosecondBuilder::with_capacity(n).with_timezone(UTC);
    let mut deleted = BooleanBuilder::with_capacity(n);
    let mut resource = StringBuilder::with_capacity(n, rows.iter().map(|r| r.resource.as_ref().map_or(0, String::len)).sum());
    let mut params: Vec<ListBuilder<StringBuilder>> =
        schema.params.iter().map(|_| ListBuilder::with_capacity(StringBuilder::new(), n).with_field(list_item())).collect();

    for row in rows {
        if row.values.len() != params.len() {
            return Err(ProjectionError::Encode("a row does not match its schema".into()));
        }
        id.append_value(&row.id);
        version.append_value(row.version_id);
        last_updated.append_value(row.last_updated.timestamp_micros());
        deleted.append_value(row.deleted);
        resource.append_option(row.resource.as_deref());
        for (builder, values) in params.iter_mut().zip(&row.values) {
            match values {
                Some(values) => {
                    for value in values {
                        builder.values().append_value(value);
                    }
                    builder.append(true);
                }
                None => builder.append(false),
            }
        }
    }

    let mut columns: Vec<ArrayRef> = Vec::with_capacity(5 + params.len());
    columns.push(Arc::new(id.finish()));
    columns.push(Arc::new(version.finish()));
    columns.push(Arc::new(last_updated.finish()));
    columns.push(Arc::new(deleted.finish()));
    columns.push(Arc::new(resource.finish()));
    columns.extend(params.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    let batch = RecordBatch::try_new(schema.arrow.clone(), columns).map_err(|e| ProjectionError::Encode(e.to_string()))?;

    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(CREATED_BY.to_string())
        .set_max_row_group_row_count(Some(n.max(1)))
        .set_key_value_metadata(Some(schema.arrow.metadata().iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect()))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::with_capacity(4096), schema.arrow.clone(), Some(properties))
        .map_err(|e| ProjectionError::Encode(e.to_string()))?;
    writer.write(&batch).map_err(|e| ProjectionError::Encode(e.to_string()))?;
    let bytes = writer.into_inner().map_err(|e| ProjectionError::Encode(e.to_string()))?;
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use arrow_array::Array;
    use chrono::{TimeZone, Utc};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Compression;

    use super::*;
    use crate::schema::schema_for;

    fn row(schema: &ProjectionSchema, id: &str, family: Option<&str>) -> ProjectionRow {
        let mut values = vec![None; schema.params.len()];
        let family_index = schema.params.iter().position(|p| p.name == "sp_family").expect("sp_family");
        values[family_index] = family.map(|f| vec![f.to_string(), format!("{f}-2")]);
        ProjectionRow {
            id: id.into(),
            version_id: 7,
            last_updated: Utc.timestamp_micros(1_714_564_800_000_001).single().expect("time"),
            deleted: family.is_none(),
            resource: family.map(|f| format!("{{\"resourceType\":\"Patient\",\"name\":[{{\"family\":\"{f}\"}}]}}")),
            values,
        }
    }

    #[test]
    fn rows_round_trip_through_parquet() {
        let schema = schema_for("Patient").expect("Patient");
        let rows = [row(schema, "a", Some("smith")), row(schema, "b", None)];
        let bytes = encode_parquet(schema, &rows).expect("encoded");
        assert_eq!(&bytes[..4], b"PAR1");

        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("a parquet file");
        let metadata = builder.metadata().clone();
        assert_eq!(metadata.num_row_groups(), 1);
        assert_eq!(metadata.row_group(0).column(0).compression(), Compression::SNAPPY);
        assert!(metadata.file_metadata().created_by().is_some_and(|c| c.starts_with("fhirlake-projection")));
        let batch = builder.build().expect("reader").next().expect("a batch").expect("decoded");
        assert_eq!(batch.schema().fields(), schema.arrow.fields());
        let key_values = metadata.file_metadata().key_value_metadata().cloned().unwrap_or_default();
        let resource_type = key_values.iter().find(|kv| kv.key == "fhirlake.projection.resource_type").and_then(|kv| kv.value.as_deref());
        assert_eq!(resource_type, Some("Patient"));
        let ids = batch.column(0).as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1)), ("a", "b"));
        assert_eq!(batch.column(1).as_primitive::<Int64Type>().value(0), 7);
        assert_eq!(batch.column(2).as_primitive::<TimestampMicrosecondType>().value(1), 1_714_564_800_000_001);
        let deleted = batch.column(3).as_boolean();
        assert_eq!((deleted.value(0), deleted.value(1)), (false, true));
        assert!(batch.column(4).is_null(1) && !batch.column(4).is_null(0));
        let family = batch.column_by_name("sp_family").expect("sp_family").as_list::<i32>();
        let first = family.value(0);
        let first = first.as_string::<i32>();
        assert_eq!((first.len(), first.value(0), first.value(1)), (2, "smith", "smith-2"));
        assert!(family.is_null(1));
        assert!(batch.column_by_name("sp_gender").expect("sp_gender").is_null(0));
    }

    #[test]
    fn an_empty_batch_is_a_valid_file_and_a_mismatched_row_is_refused() {
        let schema = schema_for("Observation").expect("Observation");
        let bytes = encode_parquet(schema, &[]).expect("encoded");
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("a parquet file");
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
        let patient = schema_for("Patient").expect("Patient");
        let wrong = row(patient, "a", Some("x"));
        assert!(matches!(encode_parquet(schema, &[wrong]), Err(ProjectionError::Encode(_))));
    }
}
