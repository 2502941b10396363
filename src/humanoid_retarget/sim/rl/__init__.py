"""Reinforcement learning of motion-tracking experts (BeyondMimic's task, PPO from rsl-rl-lib) on the CPU.

``env``: the vectorised tracking task over N MuJoCo environments (numpy); ``vecenv``: rsl-rl's VecEnv
wrapper (torch, TensorDict); ``train``: PPO training, checkpoints and deterministic evaluation;
``cluster``: a motion VAE and cosine k-means over clips (one expert per cluster).
"""
