"""Robot kinematics: URDF models (pybullet DIRECT), FK/IK, keypoint specs, pinhole cameras, skeleton rasteriser."""
