"""Layers shared by resnetlab models."""
