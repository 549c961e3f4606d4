"""Headless MixGRPO trainer (``python -m trainer.run``). Built on :mod:`mixgrpo`; never imports ``nodes/``."""
