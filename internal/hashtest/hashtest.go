// Package hashtest holds the statistics the hash tests share: the flow
// table's hash (flowtable/hash_test.go) and the compact tables' hash
// (dataplane/nat/lineindex_test.go) are held to the same bounds.
package hashtest

// ChiSquare is Pearson's statistic of counts, total keys in all, against
// a uniform spread over the len(counts) cells. Its mean is about the
// number of cells less one, and its standard deviation the square root
// of twice that.
func ChiSquare(counts []int, total int) float64 {
	exp := float64(total) / float64(len(counts))
	x := 0.0
	for _, c := range counts {
		d := float64(c) - exp
		x += d * d / exp
	}
	return x
}
