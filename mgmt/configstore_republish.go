package mgmt

// Republish hands the configuration in force to the publisher again, for a
// publisher whose output depends on more than the configuration: natd's
// interface pool follows the outside interface's address, so when that
// address changes the same configuration compiles to a new snapshot.
// Serialised with every other change.
func (s *ConfigStore) Republish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publish(s.cfg)
}
