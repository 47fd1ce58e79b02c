"""Bridges to other tools. Each module imports its tool at the top, so `import stave` never needs one; they are
imported by the tool itself (through its plugin entry point) or by name."""
