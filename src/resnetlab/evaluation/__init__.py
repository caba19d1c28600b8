"""Evaluating a trained model class by class (`resnetlab eval`)."""
