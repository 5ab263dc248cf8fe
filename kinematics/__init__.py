"""Robot kinematics: URDF models (pybullet DIRECT), FK/IK, keypoint specs, pinhole cameras, skeleton rasteriser.

Conventions: the world frame is the robot base frame; poses are ``[x, y, z, qx, qy, qz, qw]``; the
gripper value is 0.0 = fully open, 1.0 = fully closed; cameras use OpenCV axes (z forward, x right,
y down); images are RGB uint8.

    robot = load_robot("google_robot")
    points = robot.keypoints(q, gripper)                    # (T, P, 3)
    camera = robot.default_camera()                         # RT-1 head camera, 320x256
    video = SkeletonRenderer(robot.spec, 320, 256).render(points, camera)   # (T, 256, 320, 3)
"""

from kinematics.camera import PinholeCamera
from kinematics.robot import (
    IKResult,
    LinkPoses,
    RobotModel,
    available_robots,
    load_robot,
    register_robot,
)
from kinematics.skeleton import SkeletonRenderer, SkeletonStyle
from kinematics.spec import CameraSpec, Edge, EEFrame, Keypoint, KeypointSpec
from kinematics.trajectory import demo_trajectory

__all__ = [
    "CameraSpec",
    "EEFrame",
    "Edge",
    "IKResult",
    "Keypoint",
    "KeypointSpec",
    "LinkPoses",
    "PinholeCamera",
    "RobotModel",
    "SkeletonRenderer",
    "SkeletonStyle",
    "available_robots",
    "demo_trajectory",
    "load_robot",
    "register_robot",
]
