from dante_nnunet.losses.pib import PIB, build_pib, pib_loss, relative_pib_loss
from dante_nnunet.losses.alignment import (InfoNCEAlignment, RegressionAlignment, StandardizedAlignment,
                                           build_alignment, standardize)
from dante_nnunet.losses.dante_loss import DANTELoss
from dante_nnunet.losses.reconstruction import RECONSTRUCTION_TERMS, ReconstructionLoss, masked_mse
from dante_nnunet.losses.synthesis import synthesis_loss

__all__ = ["PIB", "build_pib", "pib_loss", "relative_pib_loss", "RegressionAlignment", "StandardizedAlignment",
           "InfoNCEAlignment", "build_alignment", "standardize", "DANTELoss", "RECONSTRUCTION_TERMS",
           "ReconstructionLoss", "masked_mse", "synthesis_loss"]
