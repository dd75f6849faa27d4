package arrowfmt

// ColumnParallel reports whether p encodes columns in parallel, rather
// than falling back to pqarrow's serial writer.
func ColumnParallel(p *Parquet) bool { return p.plans != nil }

// WithPageBytes answers o with data pages and dictionaries bounded to n
// bytes.
func WithPageBytes(o ParquetOptions, n int64) ParquetOptions {
	o.pageBytes = n
	return o
}
