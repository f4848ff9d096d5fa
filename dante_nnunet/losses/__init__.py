from dante_nnunet.losses.pib import pib_loss
from dante_nnunet.losses.alignment import RegressionAlignment, InfoNCEAlignment, build_alignment
from dante_nnunet.losses.dante_loss import DANTELoss
from dante_nnunet.losses.reconstruction import RECONSTRUCTION_TERMS, ReconstructionLoss, masked_mse

__all__ = ["pib_loss", "RegressionAlignment", "InfoNCEAlignment", "build_alignment", "DANTELoss",
           "RECONSTRUCTION_TERMS", "ReconstructionLoss", "masked_mse"]
