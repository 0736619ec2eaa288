"""recsys.config"""
