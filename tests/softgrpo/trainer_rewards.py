"""Reward functions the trainer tests load by dotted path (``tests.trainer_rewards:...``)."""


def digit_share(data_source, solution_str, ground_truth, extra_info=None) -> float:
    """Share of digit characters in the completion: dense, varies within a group, easy to learn."""
    return sum(ch.isdigit() for ch in solution_str) / max(len(solution_str), 1)


def constant(data_source, solution_str, ground_truth, extra_info=None) -> float:
    return 1.0
