"""A local stand-in for fal.ai's queue API that renders real MP4s.

Point a fal client at it by base URL (and its JWKS URL) and it behaves like fal for the eight
Veo endpoints: queue states, status/result/cancel, signed webhooks with retries, fal's error
shapes. It knows nothing of vidhook.
"""

from service.dev.simulator.app import create_app, serve
from service.dev.simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig", "create_app", "serve"]
