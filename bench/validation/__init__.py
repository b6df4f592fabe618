"""Checks before any work: `preflight` (registry names, weights, device, compiler), `compat` (which loss
goes with which sampler and dataset) and `checked_fields` (the key a sweep memoises the registry-name check on)."""
