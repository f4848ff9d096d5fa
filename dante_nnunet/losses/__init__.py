from dante_nnunet.losses.pib import pib_loss
from dante_nnunet.losses.alignment import RegressionAlignment, InfoNCEAlignment, build_alignment
from dante_nnunet.losses.dante_loss import DANTELoss

__all__ = ["pib_loss", "RegressionAlignment", "InfoNCEAlignment", "build_alignment", "DANTELoss"]
