from dante_nnunet.networks.fusion import ResidualFusion
from dante_nnunet.networks.dual_pathway import DualPathwayNet, DualPathwayOutput
from dante_nnunet.networks.builder import build_dual_pathway_network, build_stock_network

__all__ = ["ResidualFusion", "DualPathwayNet", "DualPathwayOutput", "build_dual_pathway_network",
           "build_stock_network"]
