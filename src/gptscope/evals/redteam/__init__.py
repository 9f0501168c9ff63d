"""Red teaming a small chatbot, after Perez et al. 2022, at toy scale: an offensive-reply
classifier trained on the stories' labels, a red LM that writes questions (zero-shot,
few-shot, supervised, RL with PPO), and a report of each method's attack success, the
diversity of its questions and its failures. See docs/evals.md."""

from gptscope.evals.redteam.methods import METHODS
from gptscope.evals.redteam.offensive import STANDS_IN, is_offensive, train_classifier
from gptscope.evals.redteam.report import judge, summarize, template
from gptscope.evals.redteam.run import red_team
from gptscope.evals.redteam.target import ReplyReward, replies

__all__ = ["METHODS", "STANDS_IN", "ReplyReward", "is_offensive", "judge", "red_team",
           "replies", "summarize", "template", "train_classifier"]
