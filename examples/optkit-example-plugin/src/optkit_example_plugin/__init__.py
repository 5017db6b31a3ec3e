"""An example optkit pass plugin (docs/writing-passes.md walks through it)."""
