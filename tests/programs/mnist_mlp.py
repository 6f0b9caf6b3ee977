"""MNIST-style MLP classifier (the PyTorch basics tutorial): Linear/ReLU stack, CrossEntropyLoss, SGD with momentum."""


def build_models(torch):
    nn = torch.nn

    class NeuralNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.flatten = nn.Flatten()
            self.linear_relu_stack = nn.Sequential(
                nn.Linear(28 * 28, 128), nn.ReLU(),
                nn.Linear(128, 64), nn.ReLU(),
                nn.Linear(64, 10),
            )

        def forward(self, x):
            return self.linear_relu_stack(self.flatten(x))

    return {"model": NeuralNetwork()}


def make_step(torch, models):
    model = models["model"]
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def train_step(X, y):
        optimizer.zero_grad()
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        return loss

    return train_step


def make_data(torch):
    return [(torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))) for _ in range(3)]
