"""Loading a trained agent from a checkpoint, and recording a video of its greedy policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fastrl.agents.registry import get_algo
from fastrl.config import ConfigError
from fastrl.training import checkpoint
from fastrl.training.checkpoint import saved_run
from fastrl.training.device import config_for_device, resolve_device
from fastrl.training.envs import make_env


def load_agent(path: str | Path, device: Any = "cpu") -> tuple[Any, Any]:
    """``(agent, config)`` from a checkpoint file (best.pt, last.pt or step_*.pt)."""
    state = checkpoint.load(path)
    algo, cfg = saved_run(state, path)
    try:
        agent_cls = get_algo(algo).agent
        env = make_env(cfg.env_id, cfg.max_episode_steps, cfg.frame_stack)
        obs_space, act_space = env.observation_space, env.action_space
        env.close()
        try:
            dev = resolve_device(device)
            cfg = config_for_device(cfg, dev)  # a CUDA-graph run's checkpoint evaluates on the CPU too
            agent = agent_cls.from_spaces(obs_space, act_space, cfg, dev, seed=0)
        except ConfigError as e:
            raise checkpoint.CheckpointError(f"{path}: {e}") from None
        agent.load_state_dict(state["agent"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise checkpoint.CheckpointError(f"{path}: bad checkpoint contents ({str(e).splitlines()[0][:200]})") from None
    return agent, cfg


def record_video(
    agent: Any, cfg: Any, out_stem: str | Path, seed: int = 0, fps: int = 30, max_frames: int = 3000
) -> Path:
    """Play one greedy episode rendered offscreen (``render_mode="rgb_array"``) and write it as
    ``<out_stem>.mp4`` (imageio-ffmpeg) or, without it, ``<out_stem>.gif`` (Pillow)."""
    env = make_env(cfg.env_id, cfg.max_episode_steps, cfg.frame_stack, render_mode="rgb_array")
    frames = []
    try:
        obs, _ = env.reset(seed=seed)
        frames.append(env.render())
        done = False
        while not done and len(frames) < max_frames:
            obs, _, term, trunc, _ = env.step(agent.greedy(np.asarray(obs)[None])[0])
            frames.append(env.render())
            done = term or trunc
    finally:
        env.close()
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    try:
        import imageio_ffmpeg
    except ImportError:
        from PIL import Image

        out = out_stem.with_name(out_stem.name + ".gif")
        images = [Image.fromarray(np.asarray(f)) for f in frames[::2]]
        images[0].save(out, save_all=True, append_images=images[1:], duration=int(2000 / fps), loop=0)
        return out
    out = out_stem.with_name(out_stem.name + ".mp4")
    h, w = np.asarray(frames[0]).shape[:2]
    writer = imageio_ffmpeg.write_frames(str(out), (w, h), fps=fps, macro_block_size=1)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return out
