"""Robot kinematics: URDF models (pybullet DIRECT), FK/IK, keypoint specs, pinhole cameras, skeleton rasteriser.

Conventions: the world frame is the robot base frame; poses are ``[x, y, z, qx, qy, qz, qw]``; the
gripper value is 0.0 = fully open, 1.0 = fully closed; cameras use OpenCV axes (z forward, x right,
y down); images are RGB uint8.

    robot = load_robot("google_robot")
    points = robot.keypoints(q, gripper)                    # (T, P, 3)
    camera = robot.default_camera()                         # RT-1 head camera, 320x256
    video = SkeletonRenderer(robot.spec, 320, 256).render(points, camera)   # (T, 256, 320, 3)
"""

from typing import TYPE_CHECKING

from kinematics._lazy import lazy_exports

# Names resolve on first use (PEP 562): transforms, cameras and the skeleton rasteriser work without
# loading pybullet, so training from a clip cache and the world model run where pybullet is absent.
_EXPORTS = {
    "PinholeCamera": "kinematics.camera",
    "IKResult": "kinematics.robot",
    "LinkPoses": "kinematics.robot",
    "RobotModel": "kinematics.robot",
    "available_robots": "kinematics.robot",
    "load_robot": "kinematics.robot",
    "register_robot": "kinematics.robot",
    "SkeletonRenderer": "kinematics.skeleton",
    "SkeletonStyle": "kinematics.skeleton",
    "CameraSpec": "kinematics.spec",
    "Edge": "kinematics.spec",
    "EEFrame": "kinematics.spec",
    "Keypoint": "kinematics.spec",
    "KeypointSpec": "kinematics.spec",
    "demo_trajectory": "kinematics.trajectory",
}

if TYPE_CHECKING:
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


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())


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
