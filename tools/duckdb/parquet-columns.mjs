// Prints, for each Parquet file given, each column's compressed bytes,
// encodings, row groups and physical type, as DuckDB reads the file's
// metadata: the column-by-column comparison of our files with DuckDB's
// (issue #14). Node resolves the import beside the script, so run it from
// the DuckDB tool directory make tools fills:
//   cp tools/duckdb/parquet-columns.mjs ~/.cache/sluice/tools/duckdb/
//   node ~/.cache/sluice/tools/duckdb/parquet-columns.mjs ours.parquet duckdb.parquet
import { DuckDBInstance } from '@duckdb/node-api';

const db = await DuckDBInstance.create(':memory:', { threads: '2' });
const c = await db.connect();
for (const file of process.argv.slice(2)) {
  const r = await c.runAndReadAll(
    "SELECT path_in_schema AS col, sum(total_compressed_size)::BIGINT AS bytes, " +
    "string_agg(DISTINCT encodings, ' | ') AS encodings, count(*) AS row_groups, any_value(type) AS type " +
    "FROM parquet_metadata('" + file.replaceAll("'", "''") + "') GROUP BY 1 ORDER BY 1");
  let total = 0;
  console.log(file);
  for (const row of r.getRowObjects()) {
    total += Number(row.bytes);
    console.log(`  ${String(row.col).padEnd(28)} ${String(row.bytes).padStart(10)}  ${row.type.padEnd(20)} ${row.row_groups} row groups  ${row.encodings}`);
  }
  console.log(`  ${'total'.padEnd(28)} ${String(total).padStart(10)}`);
}
