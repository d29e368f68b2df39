"""One module per command: `add_arguments(parser)` (import-light) and `main(args, log) -> exit code`.

Each command module is the composition root for its stage: it picks the real backends and hands them to the stage.
"""
