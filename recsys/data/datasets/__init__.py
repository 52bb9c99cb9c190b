"""Dataset readers. Each one knows its files, how to parse them, where they come from and
the statistics it must have once loaded; configs pick one by ``_target_``."""
