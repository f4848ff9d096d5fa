from dante_nnunet.networks.fusion import ResidualFusion
from dante_nnunet.networks.dual_pathway import DualPathwayNet, DualPathwayOutput
from dante_nnunet.networks.cross_modal_mae import CrossModalMAE, CrossModalMAEOutput
from dante_nnunet.networks.builder import build_cross_modal_mae, build_dual_pathway_network, build_stock_network

__all__ = ["ResidualFusion", "DualPathwayNet", "DualPathwayOutput", "CrossModalMAE", "CrossModalMAEOutput",
           "build_cross_modal_mae", "build_dual_pathway_network", "build_stock_network"]
