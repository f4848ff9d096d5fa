from dante_nnunet.training.dante_trainer import DANTETrainer
from dante_nnunet.training.variants import (DANTETrainer_1epoch, DANTETrainer_5epochs, DANTETrainer_10epochs,
                                            DANTETrainer_50epochs, DANTETrainer_L2Align, DANTETrainer_InfoNCE,
                                            DANTETrainer_noPIB, DANTETrainer_noAlign, DANTETrainer_demo)

__all__ = ["DANTETrainer", "DANTETrainer_1epoch", "DANTETrainer_5epochs", "DANTETrainer_10epochs",
           "DANTETrainer_50epochs", "DANTETrainer_L2Align", "DANTETrainer_InfoNCE", "DANTETrainer_noPIB",
           "DANTETrainer_noAlign", "DANTETrainer_demo"]
