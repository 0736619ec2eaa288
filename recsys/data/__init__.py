"""recsys.data"""
