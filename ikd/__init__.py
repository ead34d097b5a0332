"""ikd: IdentityKD — gait recognition from mmWave radar, distilled from a frozen face teacher."""

__version__ = "0.1.0"
