"""Pictures of motions: offscreen videos (MuJoCo), a browser viewer (viser) and HTML evaluation reports.

Heavy imports (mujoco rendering, viser, imageio) happen inside the modules that need them, so
importing this package is cheap.
"""
