"""vnetlab: real KVM guests on Linux bridges, from one YAML scenario."""
