"""Line-side runtime: sources, backends, actuators, scheduling, results log. Never imports torch."""
