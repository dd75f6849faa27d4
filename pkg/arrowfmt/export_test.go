package arrowfmt

// ColumnParallel reports whether p encodes columns in parallel, rather
// than falling back to pqarrow's serial writer.
func ColumnParallel(p *Parquet) bool { return p.plans != nil }
