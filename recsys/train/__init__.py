"""recsys.train"""
