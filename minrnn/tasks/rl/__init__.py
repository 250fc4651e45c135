"""Offline RL on MuJoCo locomotion: data loaders (`data`), Decision models (`models`), roll-outs
(`evaluate`), dataset collection with SAC (`collect`) and the `rl` training task (`task`)."""
