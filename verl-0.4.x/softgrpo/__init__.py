"""SofT-GRPO training: reference PyTorch trainer, tasks and a verl plug-in."""
