package events

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
)

// rotatingFile appends lines to path and, before a write would take the
// file past maxSize, renames path to path.1 (path.1 to path.2, and so on,
// keeping backups files) and starts a new one. Only the exporter goroutine
// uses it.
type rotatingFile struct {
	path      string
	maxSize   int64
	backups   int
	mode      os.FileMode
	f         *os.File
	size      int64
	rotations *atomic.Uint64
}

func openRotating(path string, maxSize int64, backups int, mode os.FileMode, rotations *atomic.Uint64) (*rotatingFile, error) {
	r := &rotatingFile{path: path, maxSize: maxSize, backups: backups, mode: mode, rotations: rotations}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, r.mode)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("events: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

// WriteLines writes p, which holds whole lines, rotating between lines as
// needed.
func (r *rotatingFile) WriteLines(p []byte) error {
	if r.f == nil {
		// A previous rotation failed to reopen: try again.
		if err := r.open(); err != nil {
			return err
		}
	}
	for len(p) > 0 {
		room := r.maxSize - r.size
		chunk := p
		if int64(len(chunk)) > room {
			// Take the whole lines that fit; if none does and the file is
			// not empty, rotate first; a single oversized line goes alone
			// into a fresh file.
			cut := bytes.LastIndexByte(chunk[:max(room, 0)], '\n') + 1
			switch {
			case cut > 0:
				chunk = chunk[:cut]
			case r.size > 0:
				if err := r.rotate(); err != nil {
					return err
				}
				continue
			default:
				chunk = chunk[:bytes.IndexByte(chunk, '\n')+1]
			}
		}
		n, err := r.f.Write(chunk)
		r.size += int64(n)
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		p = p[len(chunk):]
	}
	return nil
}

func (r *rotatingFile) rotate() error {
	if err := r.f.Close(); err != nil {
		r.f = nil
		return fmt.Errorf("events: closing %s: %w", r.path, err)
	}
	r.f = nil
	if r.backups == 0 {
		if err := os.Remove(r.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("events: %w", err)
		}
	} else {
		for i := r.backups - 1; i >= 1; i-- {
			err := os.Rename(fmt.Sprintf("%s.%d", r.path, i), fmt.Sprintf("%s.%d", r.path, i+1))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("events: %w", err)
			}
		}
		if err := os.Rename(r.path, r.path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("events: %w", err)
		}
	}
	r.rotations.Add(1)
	return r.open()
}

func (r *rotatingFile) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
