"""Engine presets: exposition names of each engine mapped to `tokenscale.core.types.EngineSample`."""
