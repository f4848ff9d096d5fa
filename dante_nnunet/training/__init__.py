from dante_nnunet.training.dante_trainer import DANTETrainer
from dante_nnunet.training.pretrain_trainer import DANTEPretrainTrainer
from dante_nnunet.training.variants import (DANTETrainer_1epoch, DANTETrainer_5epochs, DANTETrainer_10epochs,
                                            DANTETrainer_50epochs, DANTETrainer_L2Align, DANTETrainer_InfoNCE,
                                            DANTETrainer_noPIB, DANTETrainer_noAlign, DANTETrainer_noFreeze,
                                            DANTETrainer_checkpointing, DANTETrainer_demo,
                                            DANTEPretrainTrainer_1epoch, DANTEPretrainTrainer_5epochs,
                                            DANTEPretrainTrainer_10epochs, DANTEPretrainTrainer_50epochs,
                                            DANTEPretrainTrainer_selfMAE)

__all__ = ["DANTETrainer", "DANTETrainer_1epoch", "DANTETrainer_5epochs", "DANTETrainer_10epochs",
           "DANTETrainer_50epochs", "DANTETrainer_L2Align", "DANTETrainer_InfoNCE", "DANTETrainer_noPIB",
           "DANTETrainer_noAlign", "DANTETrainer_noFreeze", "DANTETrainer_checkpointing", "DANTETrainer_demo",
           "DANTEPretrainTrainer", "DANTEPretrainTrainer_1epoch", "DANTEPretrainTrainer_5epochs",
           "DANTEPretrainTrainer_10epochs", "DANTEPretrainTrainer_50epochs", "DANTEPretrainTrainer_selfMAE"]
