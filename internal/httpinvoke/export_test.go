package httpinvoke

// CheckDial is the check every connection passes, with the address it
// dials after name resolution.
func (i *Invoker) CheckDial(network, address string) error { return i.checkDial(network, address, nil) }
