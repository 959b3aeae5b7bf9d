// Package netns tells whether the process runs in the machine's own (initial)
// network namespace, where pinhole must not install test rules or routes.
package netns

// ID identifies a network namespace: the device and inode of its nsfs file.
type ID struct {
	Dev uint64
	Ino uint64
}
