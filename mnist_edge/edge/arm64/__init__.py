"""ARM64 formats run on emulated ARM cores: QEMU user mode, an arm64 Debian userland, its aarch64 wheels.

`userland.py` says where the cached userland is and whether it is usable, `emulator.py` runs a model
under a named core (from the x86 host), `worker.py` is what runs inside the emulator. Torch-free.
"""
