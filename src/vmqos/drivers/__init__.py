"""The I/O shell: everything that reads or changes the kernel lives under this package."""
