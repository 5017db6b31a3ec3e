"""Running artifacts: `vm_runner` (load a library into a Relax VM, feed inputs in manifest order; also a
script run in a child process), `isolated` (that script in a child process, natively or under qemu, so a
crash in generated code is an error, not the end of optkit), `emulation` (the AArch64 sysroot and qemu),
`runner` (`optkit run`: an artifact on inputs, compared with onnxruntime), `rpc` (a device session
through a TVM RPC tracker) and `instruction_count` (executed AArch64 instructions per inference under qemu,
with `count_plugin.c` and the guest-side `count_runner.py`).

May import: `optkit.backend.artifact`, `optkit.graph`, `optkit.core`.
"""
