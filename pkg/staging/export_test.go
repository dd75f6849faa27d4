package staging

// WaitRemoved waits until the files d moved to its trash are removed.
func WaitRemoved(d *Dir) { d.removing.Wait() }
