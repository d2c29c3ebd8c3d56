"""pose-runner: declarative, cached MMPose pipelines (detect -> pose -> visualize -> export).

    import runner
    result = runner.run(recipe="body_rtmpose", input="photos/")
"""


def __getattr__(name):
    # `runner.run` without importing torch & co. for `import runner` alone
    if name == "run":
        from runner.api import run
        return run
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
