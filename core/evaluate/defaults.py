"""The evaluation defaults every face shows and uses, importable without torch (the CLI's help)."""

DEFAULT_EVAL_N = 256  # held-out patches and samples per metric, for every face and the sweeps
UTILITY_STEPS = 600  # training steps of each classifier of the utility metric: `classifier train`'s default
# how evaluations draw their samples (ssim, kid, fid, class, utility); part of an evaluation's
# settings, which rank compares, so a change here splits old evaluations from new (BENCHMARKS.md,
# "Few-step sampling", says why DDIM-50 stays)
EVAL_SAMPLER = "ddim"
EVAL_STEPS = 50
