package neigh

// nsID identifies a network namespace: the device and inode of its nsfs
// file, which is what two handles of the same namespace share.
type nsID struct{ dev, ino uint64 }

// allIn reports whether every thread namespace listed is ns (and at least
// one is listed).
func allIn(ns nsID, threads []nsID) bool {
	for _, t := range threads {
		if t != ns {
			return false
		}
	}
	return len(threads) > 0
}
