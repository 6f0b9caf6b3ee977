"""Neural style transfer (the neural style tutorial, small): a frozen CNN feature extractor, content loss and
Gram-matrix style losses, the input image itself optimised (the tutorial's LBFGS replaced by Adam here; the
LBFGS closure style is exercised by ``time_sequence_lbfgs``)."""


def build_models(torch):
    nn = torch.nn
    cnn = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
    )
    content_img = torch.rand(1, 3, 16, 16)
    return {"cnn": cnn.eval(), "input_img": content_img.clone(), "content_img": content_img,
            "style_img": torch.rand(1, 3, 16, 16)}


def make_step(torch, models):
    F = torch.nn.functional
    cnn, input_img = models["cnn"], models["input_img"]
    for p in cnn.parameters():
        p.requires_grad_(False)

    def gram_matrix(input):
        a, b, c, d = input.size()
        features = input.view(a * b, c * d)
        G = torch.mm(features, features.t())
        return G.div(a * b * c * d)

    def features(x):
        out = []
        for layer in cnn:
            x = layer(x)
            if isinstance(layer, torch.nn.ReLU):
                out.append(x)
        return out

    with torch.no_grad():
        content_targets = [f.detach() for f in features(models["content_img"])]
        style_targets = [gram_matrix(f).detach() for f in features(models["style_img"])]
    input_img.requires_grad_(True)
    optimizer = torch.optim.Adam([input_img], lr=0.05)
    style_weight, content_weight = 1e4, 1.0

    def train_step():
        with torch.no_grad():
            input_img.clamp_(0, 1)
        optimizer.zero_grad()
        feats = features(input_img)
        style_score = sum(F.mse_loss(gram_matrix(f), t) for f, t in zip(feats, style_targets))
        content_score = F.mse_loss(feats[-1], content_targets[-1])
        loss = style_weight * style_score + content_weight * content_score
        loss.backward()
        optimizer.step()
        return style_score, content_score

    return train_step


def make_data(torch):
    return [()]
